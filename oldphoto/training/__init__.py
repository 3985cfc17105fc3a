"""Training the restoration networks: synthetic degradations, datasets, losses, stages.

Nothing here is imported by the restore path; ``oldphoto train`` and ``oldphoto degrade``
load it on demand. Stages write the same checkpoint format that ``--weights DIR`` reads.
"""
