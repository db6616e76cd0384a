"""evaluation: persona inference quality, segmentation vs RFM, and a persona-enhanced
LightGCN recommender, each reproducing a claim of Shi et al. (SIGIR 2025) on real data.

Modules: ``metrics`` (pure numpy metrics), ``data`` (inputs), ``inference``,
``segmentation``, ``recommender`` (numpy LightGCN) and ``report`` (markdown + PNG).
"""
