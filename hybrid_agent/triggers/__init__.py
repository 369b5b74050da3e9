"""Event sources (user submissions now; file, cron and webhooks later) and the router
that turns events into tasks by rules."""
