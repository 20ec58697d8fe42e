"""From a compute budget to days, GPU-hours, megawatts and dollars: the planner (`planner`), the
throughput it plans with (`throughput`), failures (`reliability`), power and cost (`energy`), and
the sentences it prints (`text`)."""
