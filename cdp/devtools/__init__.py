"""Tools for developers: throwaway database servers for tests and benchmarks."""
