"""NOIS Bitrix24 local application: composition root, edges, gateway, storage and CLI."""

__version__ = "0.1.0"
