"""Update rules (``optimizers``) and learning-rate schedules (``schedules``)."""
