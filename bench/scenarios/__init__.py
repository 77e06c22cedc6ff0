"""The benchmark scenarios: one module each, every case a plain function."""
