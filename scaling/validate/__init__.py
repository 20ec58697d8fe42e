"""Published training runs the planner is checked against (`runs`), with their citations; the
GEMM rate a run implies (`match`); one transformer layer against its measured time
(`layers`)."""
