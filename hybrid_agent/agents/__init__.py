"""The agent: worker, loop, tools, sandbox."""
