from mtsac_jax.policy import load_policy

__all__ = ["load_policy"]
