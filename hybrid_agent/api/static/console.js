// The console's live parts: the task list refreshes itself, a task's trace follows the
// task over server-sent events. Everything else is plain HTML forms.
"use strict";

const TERMINAL = new Set(["succeeded", "failed", "cancelled", "rolled_back"]);

function refreshTaskList(table) {
  const url = table.dataset.refresh;
  setInterval(async () => {
    const response = await fetch(url, { credentials: "same-origin" });
    if (response.ok) table.querySelector("tbody").innerHTML = await response.text();
  }, 3000);
}

function stepItem(step) {
  const item = document.createElement("li");
  item.className = "step " + (step.ok ? "ok" : "failed");
  item.dataset.n = step.n;
  const head = document.createElement("div");
  head.className = "step-head";
  head.textContent = `step ${step.n} · ${step.decision || ""}` + (step.rollback ? " · undone" : "");
  const call = document.createElement("pre");
  call.className = "call";
  call.textContent = step.tool_call ? JSON.stringify(step.tool_call) : "(no call)";
  const output = document.createElement("pre");
  output.className = "output";
  output.textContent = step.observation || "";
  item.append(head, call, output);
  return item;
}

function followTask(list) {
  const events = new EventSource(`/api/tasks/${list.dataset.task}/events`);
  events.addEventListener("step", (message) => {
    const step = JSON.parse(message.data);
    if (!list.querySelector(`li[data-n="${step.n}"]`)) list.append(stepItem(step));
  });
  events.addEventListener("status", (message) => {
    const { status } = JSON.parse(message.data);
    const badge = document.getElementById("task-status");
    if (badge.textContent !== status) {
      badge.textContent = status;
      badge.className = "status " + status;
    }
    if (TERMINAL.has(status) || status === "awaiting_approval") {
      events.close();
      location.reload();   // the final record: result, rollback, snapshots
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const table = document.querySelector("table[data-refresh]");
  if (table) refreshTaskList(table);
  const steps = document.getElementById("steps");
  if (steps && steps.dataset.ended === "no") followTask(steps);
});
