"""Where tenant versions registered before ``registry/`` was grouped find their pyfunc class.

MLflow stores each version's ``python_model`` pickled by reference, as ``registry.pyfunc.TenantModel``;
loading such a version in a process that already imported this ``registry`` looks the class up
here. Nothing else may import this module: the code lives in ``registry.artifacts.pyfunc``.
"""
from registry.artifacts.pyfunc import TenantModel

__all__ = ["TenantModel"]
