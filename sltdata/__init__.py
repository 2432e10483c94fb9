"""sltdata: sign-language pose datasets, from the publisher's files to trained models."""

from sltdata.sequence import Sequence

__all__ = ["Sequence"]
__version__ = "0.1.0"
