"""What emeval reads from users and the data mirror: pinned datasets, user files, -T values, prompt templates."""
