"""``python -m machines.compat.regen``: rebuild the generated model data.

The QEMU import itself is regenerated with ``machines import`` (see
``machines/compat/sources/README.md``); this rebuilds ``data/model.json`` from
that import and the files in ``sources/``.
"""

from machines.compat.reference import regenerate

if __name__ == "__main__":
    from machines.compat.packed import regenerate_all

    print(f"wrote {regenerate()}")
    for path in regenerate_all():
        print(f"wrote {path}")
