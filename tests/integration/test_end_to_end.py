"""A task travels REST -> EVENTS -> router -> TASKS -> worker -> the real default LLM's tool
calls -> sandboxed execution -> a journaled result, on both stacks."""

import pytest

pytestmark = pytest.mark.llm


async def test_hello_file_travels_the_whole_path(stack, tmp_path):
    workspace = tmp_path / "w"
    task = await stack.run_task("Create a file named hello.txt containing the word hello", workspace)
    assert task["status"] == "succeeded", task
    assert "hello" in (workspace / "hello.txt").read_text()
    kinds = [entry["kind"] for entry in task["journal"]]
    assert kinds[:3] == ["event.published", "task.enqueued", "task.delivered"] and kinds[-1] == "task.finished"
    assert task["journal"][1]["detail"]["stream"] == "TASKS"
    assert task["steps"] and task["steps"][-1]["tool_call"]["tool"] == "finish"
    for step in task["steps"]:
        assert step["candidates"] and step["prompt_tokens"] > 0 and step["duration_s"] > 0
    assert task["isolation"] == "rlimit"
