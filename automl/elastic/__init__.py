"""Elastic building blocks of weight-sharing supernets (see :mod:`automl.supernet`): the elastic layers
(:mod:`.layers`), reading a supernet's maxima from a search space (:mod:`.space_queries`), and module
surgery on supernets and extracted sub-networks (:mod:`.surgery`)."""
