"""machines: QEMU's x86 machine types, their compat properties, and KVM SEOIB.

The public surface is small: :func:`machines.registry.get_build` gives a QEMU
build (a model release or an imported binary) with its machine type classes;
:mod:`machines.resolve` says what a property's effective value is and why.
"""

__version__ = "0.1.0"
