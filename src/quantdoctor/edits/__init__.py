"""edits: changes made to the user's model inside the conversion worker, on a copy.

`plan` (a repair plan's model and data steps), `transforms` (the edits themselves), `call_graph`
(a Keras model as a flat list of layer calls) and `cut` (a sub-model of some calls, calibrated on
the real activations before the cut).
"""
