"""What the binding study and ResiliNet share: configs, run directories, checkpoints, seeding, errors."""
