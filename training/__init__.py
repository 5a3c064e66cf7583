"""ltag's training package (torch + timm): data, model (GeM, ArcFace), train, evaluate, export.

Its only output the runtime sees is a model bundle (docs/model-bundle.md). It may import
``landmark_tagger`` (preprocess, scoring, metrics, bundle); ``landmark_tagger`` never imports it.
"""
