"""The zoo (datasets, architectures, interventions, perturbations) and the benchmark tasks."""
