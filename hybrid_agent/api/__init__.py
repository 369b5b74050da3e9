"""The FastAPI control plane: tasks, auth, health (approvals, hooks, traces and the console later)."""
