"""Tracer kinetics: bolus and replenishment models, their fits and the contract's parameters."""
