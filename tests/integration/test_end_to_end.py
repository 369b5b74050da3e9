"""A task travels REST -> EVENTS -> router -> TASKS -> worker -> the real default LLM's tool
calls -> sandboxed execution -> a journaled result, on both stacks."""

import pytest

pytestmark = pytest.mark.llm


async def test_hello_file_travels_the_whole_path(stack, tmp_path):
    workspace = tmp_path / "w"
    task = await stack.run_task("Create a file named hello.txt containing the word hello", workspace)
    assert task["status"] == "succeeded", task
    assert "hello" in (workspace / "hello.txt").read_text()
    journal = {entry["kind"]: entry["detail"] for entry in task["journal"]}
    assert set(journal) == {"event.published", "task.enqueued", "task.delivered", "task.finished"}
    assert task["journal"][-1]["kind"] == "task.finished"
    assert journal["event.published"]["stream"] == "EVENTS"
    assert journal["task.enqueued"]["stream"] == "TASKS"
    # The worker got the very message the router put on TASKS.
    assert journal["task.delivered"]["seq"] == journal["task.enqueued"]["seq"]
    assert task["steps"] and task["steps"][-1]["tool_call"]["tool"] == "finish"
    for step in task["steps"]:
        assert step["candidates"] and step["prompt_tokens"] > 0 and step["duration_s"] > 0
    assert task["isolation"] == "bwrap"   # the Makefile installs bubblewrap; auto picks it
