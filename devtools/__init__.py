"""Development tools: the demo dataset and a throwaway local PostgreSQL. Never imported by the jobs,
never shipped to executors; reached through `--demo`, the tests and the benchmarks."""
