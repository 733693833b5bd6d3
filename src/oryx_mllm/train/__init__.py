"""Training data layer: records, patch files, lazy dataset with bad-sample skipping, the
modality/length-grouped sampler, padding-free packing and the needle-in-a-haystack builder."""

from oryx_mllm.train.data import (
    Fetched,
    OryxJsonDataset,
    SkipBatch,
    SkipCollate,
    SkipEvent,
    SkippingDataset,
    SkipStats,
)
from oryx_mllm.train.niah import NiahVideo, build_niah_file, build_niah_samples, parse_niah_video
from oryx_mllm.train.packing import PackedSequence, first_fit_bins, pack_sequences
from oryx_mllm.train.patchfile import MediaRef, PatchFileWriter, parse_media_ref, read_patch
from oryx_mllm.train.records import (
    IMAGE_PLACEHOLDER,
    VIDEO_PLACEHOLDER,
    Sample,
    Turn,
    check_media_exists,
    iter_json_records,
    load_records,
    parse_sample,
)
from oryx_mllm.train.sampler import LengthEstimator, ModalityLengthGroupedSampler, estimate_length

__all__ = [
    "IMAGE_PLACEHOLDER",
    "VIDEO_PLACEHOLDER",
    "Fetched",
    "LengthEstimator",
    "MediaRef",
    "ModalityLengthGroupedSampler",
    "NiahVideo",
    "OryxJsonDataset",
    "PackedSequence",
    "PatchFileWriter",
    "Sample",
    "SkipBatch",
    "SkipCollate",
    "SkipEvent",
    "SkipStats",
    "SkippingDataset",
    "Turn",
    "build_niah_file",
    "build_niah_samples",
    "check_media_exists",
    "estimate_length",
    "first_fit_bins",
    "iter_json_records",
    "load_records",
    "pack_sequences",
    "parse_media_ref",
    "parse_niah_video",
    "parse_sample",
    "read_patch",
]
