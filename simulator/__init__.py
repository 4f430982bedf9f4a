"""paysim's simulator: runtime, fakes, workload, faults, topology, history, checkers, reports, CLI.

Imports `reference_impl` (the engine boundary); `reference_impl` never imports this package.
"""
