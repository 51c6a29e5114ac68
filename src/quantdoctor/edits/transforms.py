"""The changes `fix` makes to the data and to Keras models, as plain functions.

quantdoctor applies them, and `fix --script` copies their source verbatim into the standalone
script, so the script and quantdoctor run the very same code. They therefore use only NumPy and
Keras (imported inside the Keras ones: the Keras that built the model, Keras 3 or tf_keras) and
nothing from quantdoctor.

A sample is one item of a representative dataset: a list of arrays, a dict of input name ->
array, or a `(signature_key, dict)` tuple; a bare array or a tuple only before `as_list`.
"""

import numpy as np


def map_arrays(sample, change):
    """`change(key, array)` applied to every array of a sample (key: list position or input name)."""
    if isinstance(sample, tuple):
        return sample[0], map_arrays(sample[1], change)
    if isinstance(sample, dict):
        return {key: change(key, value) for key, value in sample.items()}
    return [change(position, value) for position, value in enumerate(sample)]


def as_list(sample):
    """A bare array, or a tuple of arrays, becomes the documented list of arrays."""
    if isinstance(sample, tuple) and not (len(sample) == 2 and isinstance(sample[1], dict)):
        return list(sample)
    if isinstance(sample, (list, dict, tuple)):
        return sample
    return [sample]


def cast_to(sample, dtypes):
    """Each array cast to its input's dtype; `dtypes` by list position or input name. A complex array
    cast to a real dtype gives its real part (fix casts only those whose imaginary parts are all 0)."""
    def cast(key, value):
        if key not in dtypes:
            return value
        array = np.asarray(value)
        if np.iscomplexobj(array) and not np.issubdtype(np.dtype(dtypes[key]), np.complexfloating):
            array = array.real
        return array.astype(dtypes[key])

    return map_arrays(sample, cast)


def with_batch_axis(sample, keys):
    """The arrays at `keys` (list positions or input names) gain a leading batch axis of 1."""
    return map_arrays(sample, lambda key, value: np.expand_dims(value, 0) if key in keys else value)


def keyed_by_input(sample, names):
    """A dict by input name; `names` maps each list position (or each dict key) to its input."""
    items = sample.items() if isinstance(sample, dict) else enumerate(sample)
    return {names[key]: value for key, value in items}


def is_finite(sample):
    """False when any float array of the sample holds a NaN or an Inf."""
    values = sample[1] if isinstance(sample, tuple) else sample
    arrays = [np.asarray(v) for v in (values.values() if isinstance(values, dict) else values)]
    return all(np.isfinite(a).all() for a in arrays if np.issubdtype(a.dtype, np.floating))


def for_each_signature(sample, signatures):
    """One `(signature_key, dict)` sample per signature; `signatures` maps each key to its input
    names, in the order of the sample's list items (dict samples keep their keys)."""
    if isinstance(sample, dict):
        return [(key, dict(sample)) for key in signatures]
    return [(key, dict(zip(names, sample))) for key, names in signatures.items()]


def _same_weights(clone, model):
    clone.set_weights(model.get_weights())
    return clone


def _keras_of(model):
    """The Keras that built `model`: tf_keras (Keras 2) for its models, Keras 3 otherwise. A model is
    edited with its own Keras: the other one's clone_model and Input do not take it."""
    import importlib

    for cls in type(model).__mro__:
        package = cls.__module__.split(".")[0]
        if package in ("keras", "tf_keras"):
            return importlib.import_module(package)
    return importlib.import_module("keras")


def with_static_batch(model, batch_size):
    """The same layers and weights behind inputs with a fixed batch size."""
    keras = _keras_of(model)

    inputs = [keras.Input(x.shape[1:], batch_size=batch_size, dtype=x.dtype, name=x.name) for x in model.inputs]
    return _same_weights(keras.models.clone_model(model, input_tensors=inputs if len(inputs) > 1 else inputs[0]),
                         model)


def with_unrolled_recurrence(model):
    """Every recurrent layer with unroll=True: its loop becomes one copy of the cell per time step."""
    keras = _keras_of(model)

    def unroll(config):  # nested models keep their layers' configs in lists
        if isinstance(config, dict):
            if "unroll" in config:
                config["unroll"] = True
            for value in config.values():
                unroll(value)
        elif isinstance(config, list):
            for value in config:
                unroll(value)
        return config

    def clone(layer):
        return layer.__class__.from_config(unroll(layer.get_config()))

    return _same_weights(keras.models.clone_model(model, clone_function=clone), model)


def in_float32(model):
    """Every layer rebuilt with the float32 dtype policy (no mixed precision), same weights."""
    keras = _keras_of(model)

    def clone(layer):
        config = layer.get_config()
        config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    return _same_weights(keras.models.clone_model(model, clone_function=clone), model)


def with_input_names(model, names):
    """A validly named Input in front of each input renamed in `names` (old -> new): the layers and
    weights are the model's own, shared, not copied."""
    keras = _keras_of(model)

    inputs = [keras.Input(x.shape[1:], batch_size=x.shape[0], dtype=x.dtype, name=names.get(x.name, x.name))
              for x in model.inputs]
    return keras.Model(inputs, model(inputs if len(inputs) > 1 else inputs[0]), name=model.name)


def with_inputs(model, inputs, call):
    """One Input per call argument in front of a model whose input shapes the converter cannot read (a subclassed
    model whose call takes several tensors, a TFSMLayer). `inputs` are (name, shape without the batch axis, dtype)
    in the order the model takes them; `call` says how the model takes them: "single" (one tensor), "positional"
    (one argument each), "keywords" (by argument name), "list" or "dict" (one argument holding them all). The
    layers and weights are the model's own, shared, not copied."""
    keras = _keras_of(model)

    tensors = [keras.Input(tuple(shape), dtype=dtype, name=name) for name, shape, dtype in inputs]
    named = {name: tensor for (name, _, _), tensor in zip(inputs, tensors)}
    if call == "single":
        outputs = model(tensors[0])
    elif call == "positional":
        outputs = model(*tensors)
    elif call == "keywords":
        outputs = model(**named)
    else:
        outputs = model(named if call == "dict" else tensors)
    return keras.Model(tensors if len(tensors) > 1 else tensors[0], outputs, name=model.name)
