"""TFDS datasets: read prepared ones by name, and turn local text into a prepared ArrayRecord dataset.

Reading goes through the builder's `as_data_source` (ArrayRecord random access; TensorFlow is not needed). A dataset
prepared as TFRecord is read with `tfds.load` when TensorFlow is installed (`pip install bitnet-jax[tf]`).

Writing needs no TensorFlow either: a GeneratorBasedBuilder with `file_format="array_record"` serialises examples
with tfds's own protobuf `tf.train.Example` copy (tensorflow_datasets/proto) and writes them with array_record.
"""

from __future__ import annotations

import shutil
import types
from collections.abc import Iterator
from pathlib import Path

from bitnet_jax.data.corpus import file_paths
from bitnet_jax.data.sources import iter_file_documents, tfds_data_dir
from bitnet_jax.errors import DataError

_LOCAL_VERSION = "1.0.0"
_READ_BATCH = 256  # records fetched per random-access call


def _how_to_prepare(name: str, data_dir: str) -> str:
    return (f"prepare it with `tfds build {name} --data_dir {data_dir} --file_format array_record` (catalogue "
            f"datasets; building needs TensorFlow) or, for local text, `bitnet-jax data build {name} FILES... "
            f"--data-dir {data_dir}`")


def open_tfds(name: str, split: str = "train", data_dir: str | None = None):
    """A random-access sequence of the examples of a prepared TFDS dataset (or a tf.data iterable for TFRecord
    datasets when TensorFlow is installed)."""
    import tensorflow_datasets as tfds

    if not name:
        raise DataError("data.source=tfds needs data.tfds_name (e.g. lm1b, c4/en, wiki40b/en, or a name built with "
                        "`bitnet-jax data build`)")
    where = tfds_data_dir(data_dir)
    try:
        builder = tfds.builder(name, data_dir=where)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(f"TFDS dataset {name!r} is not in the TFDS catalogue and not prepared under {where}; "
                        f"{_how_to_prepare(name, where)}") from None
    try:
        return builder.as_data_source(split=split)
    except Exception as e:  # noqa: BLE001 -- tfds raises assorted types here; each case below gets its own message
        if not builder.is_prepared():
            raise DataError(f"TFDS dataset {name!r} is not prepared under {where}; "
                            f"{_how_to_prepare(name, where)}") from None
        splits = list(builder.info.splits)
        if split.split("[")[0] not in splits:
            raise DataError(f"TFDS dataset {name!r} has no split {split!r}; set data.tfds_split to one of "
                            f"{', '.join(splits)}") from None
        if builder.info.file_format == tfds.core.FileFormat.TFRECORD:
            return _load_tfrecord(tfds, name, split, where)
        raise DataError(f"TFDS dataset {name!r} under {where} cannot be read: {str(e).splitlines()[0]}") from None


def prepared_files(name: str, data_dir: str | None = None) -> list[list]:
    """[file name, size, mtime_ns] of each file of a prepared dataset version (empty when it is not on disk)."""
    import tensorflow_datasets as tfds

    try:
        version_dir = Path(tfds.builder(name, data_dir=tfds_data_dir(data_dir)).data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        return []
    if not version_dir.is_dir():
        return []
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(version_dir.iterdir()) if p.is_file()]


def _load_tfrecord(tfds, name: str, split: str, data_dir: str):
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        raise DataError(f"TFDS dataset {name!r} is prepared as TFRecord, which needs TensorFlow: "
                        f"`pip install bitnet-jax[tf]`, or rebuild it with --file_format array_record") from None
    return tfds.as_numpy(tfds.load(name, split=split, data_dir=data_dir, download=False))


def iter_tfds_documents(data_config) -> Iterator[bytes]:
    """The text feature of every example of the configured split, in index order, as UTF-8 bytes (b"" for an empty
    one, which TextStream counts)."""
    source = open_tfds(data_config.tfds_name, data_config.tfds_split, data_config.tfds_data_dir)
    feature = data_config.tfds_feature
    for example in _examples(source):
        if feature not in example:
            raise DataError(f"TFDS dataset {data_config.tfds_name!r} has no feature {feature!r} (has: "
                            f"{', '.join(example)}); set data.tfds_feature")
        text = example[feature]
        yield text.encode("utf-8") if isinstance(text, str) else bytes(text)


def _examples(source) -> Iterator[dict]:
    if not hasattr(source, "__getitem__"):  # tf.data via tfds.as_numpy
        yield from source
        return
    getitems = getattr(source, "__getitems__", None)
    for start in range(0, len(source), _READ_BATCH):
        keys = list(range(start, min(start + _READ_BATCH, len(source))))
        if getitems is not None:
            try:
                yield from getitems(keys)
                continue
            except TypeError:  # tfds.testing.mock_data (4.9.10) mocks __getitems__ without `self`: read one by one
                getitems = None
        yield from (source[k] for k in keys)


def _local_text_builder(name: str):
    """A GeneratorBasedBuilder class named `name` (not registered in the TFDS catalogue) that writes local text
    files as one `train` split of {"text": ...} examples, in file order."""
    import tensorflow_datasets as tfds

    class LocalText(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version(_LOCAL_VERSION)

        def __init__(self, *, paths: list[Path], text_field: str, text_errors: str, **kwargs):
            self._paths, self._field, self._errors = paths, text_field, text_errors
            super().__init__(**kwargs)

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self, description=f"Local text from {len(self._paths)} file(s), built by bitnet-jax.",
                features=tfds.features.FeaturesDict({"text": tfds.features.Text()}),
                disable_shuffling=True)

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for i, doc in enumerate(iter_file_documents(self._paths, self._field, self._errors)):
                yield i, {"text": doc.decode("utf-8")}

    return types.new_class(f"LocalText_{name}", (LocalText,), {"skip_registration": True},
                           lambda ns: ns.update(name=name))


def build_dataset(name: str, patterns: tuple[str, ...], data_dir: str | None = None, text_field: str = "text",
                  text_errors: str = "strict", overwrite: bool = False) -> Path:
    """Prepare the local text files matched by `patterns` as the ArrayRecord TFDS dataset `name` under data_dir;
    read it back with data.source=tfds, data.tfds_name=name. Returns the dataset's version directory."""
    import tensorflow_datasets as tfds

    if not name or not name.replace("_", "").isalnum() or not name[0].isalpha() or name != name.lower():
        raise DataError(f"dataset name {name!r}: use lower-case letters, digits and underscores, starting with a "
                        f"letter (e.g. my_corpus)")
    if name in tfds.list_builders(with_community_datasets=False):
        raise DataError(f"{name!r} is a TFDS catalogue dataset; choose another name for local text (e.g. my_{name})")
    where = tfds_data_dir(data_dir)
    target = Path(where) / name / _LOCAL_VERSION
    if target.exists():
        if not overwrite:
            raise DataError(f"TFDS dataset {name!r} already exists at {target}; pass --overwrite to rebuild it or "
                            f"choose another name")
        shutil.rmtree(target)
    builder = _local_text_builder(name)(paths=file_paths(tuple(patterns)), text_field=text_field,
                                        text_errors=text_errors, data_dir=where, file_format="array_record")
    builder.download_and_prepare()
    return Path(builder.data_dir)
