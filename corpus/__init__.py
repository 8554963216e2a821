"""Reading raw corpora: the one reader of raw files, below both `pipeline/` and `trainer/`.

    files.py    a file's bytes → a stream of UTF-8 lines (decompression, --encoding, BOM)
    lines.py    the line splitter (\\n, \\r\\n, lone \\r), with a fast path for plain text
    blocks.py   lines → the sentences of CoNLL and CoNLL-U files
    records.py  the record rules of each format: a good Record, Filtered, or a BadRecord
    reader.py   a whole file → its records in order (trainer.evaluate, trainer.predict)
    parquet.py  Parquet row groups → records

No Beam and no TensorFlow: the trainer reads raw files with this code too, so a file gives
the same records to the pipeline and to trainer.evaluate and trainer.predict.
"""
