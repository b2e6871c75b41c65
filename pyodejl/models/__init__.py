"""Models: vector fields (any object following the protocol of :mod:`.vector_field`), Neural ODEs and SDEs.

Where things go: a new model is one module here that provides ``num_params``
and a pure ``__call__(t, y, theta)`` (see :mod:`pyodejl.models.vector_field`).
"""

from pyodejl.models.mlp import ACTIVATIONS, MLP
from pyodejl.models.neural_ode import NeuralODE
from pyodejl.models.neural_sde import NeuralSDE
from pyodejl.models.resnet import ResNet, ResNetVectorField
from pyodejl.models.second_order import SecondOrder
from pyodejl.models.time_mlp import ConcatTimeMLP
from pyodejl.models.vector_field import VectorField, check_vector_field

__all__ = [
    "ACTIVATIONS",
    "ConcatTimeMLP",
    "MLP",
    "NeuralODE",
    "NeuralSDE",
    "ResNet",
    "ResNetVectorField",
    "SecondOrder",
    "VectorField",
    "check_vector_field",
]
