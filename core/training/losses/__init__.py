"""RouterDC's two contrastive losses, one per module, each with its maths in a plain function."""

from .sample_llm import SampleLLMLoss, sample_llm_loss
from .sample_sample import SampleSampleLoss, sample_sample_loss

__all__ = ["SampleLLMLoss", "SampleSampleLoss", "sample_llm_loss", "sample_sample_loss"]
