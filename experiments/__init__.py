"""Drivers for the paper tables, ablations, sweeps and analyses; configs/ holds the per-model TOML files."""
