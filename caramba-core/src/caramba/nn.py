"""The torch side of caramba's public API: what layer and topology authors subclass and use.

``caramba`` itself never imports torch; this module does, so import it only from the
modules a lazy factory names (``"my_pkg.layer:ScaleLayer"``), never from a plugin's
registration module. Everything a plugin needs is in ``caramba.__all__`` or here.

* :class:`NodeModule`: base of a layer module (``forward(x, ctx)``, ``self.config``,
  ``self.node_path`` set by the builder); :class:`TopologyModule` adds ``self.layers``.
* :class:`Context` and :class:`AuxLoss`: the explicit per-call state of ``forward``;
  :class:`DecodeStep`: static-shape decoding instructions a decoder puts on ``Context.decode``.
* :class:`KVCacheBase`, :class:`StaticKVCache`, :class:`RecurrentState`: the cache protocol
  between layers that cache while decoding and the decoders that own the caches.
* :class:`Builder`: builds modules from validated node configs (systems building their
  parts, weight importers building a model to load into).
"""

from __future__ import annotations

from caramba.graph._build import Builder
from caramba.graph._caches import KVCacheBase, RecurrentState, StaticKVCache
from caramba.graph._context import AuxLoss, Context, DecodeStep
from caramba.graph._modules import NodeModule, TopologyModule

__all__ = [
    "AuxLoss",
    "Builder",
    "Context",
    "DecodeStep",
    "KVCacheBase",
    "NodeModule",
    "RecurrentState",
    "StaticKVCache",
    "TopologyModule",
]
