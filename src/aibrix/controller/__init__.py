"""The ModelAdapter controller: schedules LoRA adapters onto engine pods, loads them, and exposes them."""
