"""Method modules register themselves at import (timm's `@register_model` pattern); add new ones here."""

from bench.methods import ifdd, r3d18, r18_lstm, static  # noqa: F401
