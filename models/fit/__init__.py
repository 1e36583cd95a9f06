"""The FIT query-parser domain: output schema, gazetteer, site register, rule parser,
training-set generator and scoring. Pure Python; nothing here imports torch."""
