"""Published training runs the planner is checked against (`runs`), with their citations."""
