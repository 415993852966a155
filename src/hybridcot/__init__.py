"""hybridcot: make reasoning LLMs spend only the thinking they need (AdaR1 and Long⊗Short)."""

__version__ = "0.1.0"
