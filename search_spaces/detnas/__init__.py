"""The detnas space's builder and its parts (Joint-DetNAS, PAPERS.md §3): the searchable backbone
(:mod:`.backbone`), mmdet detectors around it (:mod:`.detector`), network morphisms (:mod:`.morph`),
weight inheritance (:mod:`.inherit`), the elastic teacher pool (:mod:`.teacher`) and saved models
(:mod:`.saved`)."""
