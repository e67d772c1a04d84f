"""nn: the networks.

``acla`` (the ACLA module), ``attention_core`` (which core it runs per device, and the autograd
node of the CPU core), ``acla_triton`` (the fused CUDA kernel), ``backbones`` (built-in and user
backbones with their sites), ``arch`` (one point of a space), ``scope`` (a site's reference scope -> its reference sites), ``network`` (Arch -> child
nn.Module, and the memory a child needs), ``cost`` (MACs and parameters). May import: ``core``,
``runtime``, ``tasks``, ``data``.
"""

from __future__ import annotations
