"""Models: vector fields and the Neural ODEs built from them."""

from pyodejl.models.mlp import ACTIVATIONS, MLP
from pyodejl.models.neural_ode import NeuralODE

__all__ = ["ACTIVATIONS", "MLP", "NeuralODE"]
