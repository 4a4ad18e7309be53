"""Where the crawl's state lives: in this process, or in Redis for many machines."""

from .base import Frontier, Item
from .memory import MemoryFrontier

__all__ = ["Frontier", "Item", "MemoryFrontier"]
