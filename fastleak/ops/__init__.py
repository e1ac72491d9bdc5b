"""Fused operators: compiled kernels (fastleak._C) behind PyTorch wrappers.

Every op has a pure-PyTorch reference that defines its semantics; the wrappers fall back to
it per device, when the compiled library is missing or has no kernel for the inputs' device.
"""
from fastleak.ops.fc_row_stats import fc_row_stats, fc_row_stats_reference
from fastleak.ops.grad_distance import grad_distance, grad_distance_reference
from fastleak.ops.imprint_certify import CertifiedBins, imprint_certify, imprint_certify_reference
from fastleak.ops.imprint_recover import BinInputs, imprint_recover, imprint_recover_reference
from fastleak.ops.total_variation import total_variation, total_variation_reference

__all__ = [
    "grad_distance", "grad_distance_reference",
    "total_variation", "total_variation_reference",
    "fc_row_stats", "fc_row_stats_reference",
    "imprint_recover", "imprint_recover_reference", "BinInputs",
    "imprint_certify", "imprint_certify_reference", "CertifiedBins",
]
