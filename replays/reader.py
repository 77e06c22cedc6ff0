"""Reading a recorded run, for designers' tools: header, tick records, snapshots.

The reader is state code (``norn run --resume`` rebuilds worlds with it), so it lives in
``norn.engine.reader`` beside the recorder; this module keeps the designers' import path.
"""

from norn.engine.reader import RunJournal, chunk_state, durable_seqs, open_run

__all__ = ["RunJournal", "chunk_state", "durable_seqs", "open_run"]
