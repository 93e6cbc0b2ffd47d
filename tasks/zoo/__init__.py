"""Model zoo: datasets, architectures, training interventions and weight perturbations."""
