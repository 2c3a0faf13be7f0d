"""The numbers by which the compiled kernel (``compiled.py``) names what it runs, defined once
and read by both sides: ``engines.py``, which hands a network to the kernel, and the kernel.
Kept apart from both so that neither imports the other (and numba is imported only when the
compiled engine trains)."""

#: the update rules the kernel runs; a rule's code is its position here
RULES = ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw")
ACTIVATION_CODES = {"identity": 0, "sigmoid": 1, "tanh": 2, "relu": 3, "leaky_relu": 4}
OUTPUT_CODES = {"sigmoid": 0, "softmax": 1}
#: the hyper-parameters, by position (``beta1`` holds momentum's and rmsprop's beta)
HYPER = ("lr", "beta1", "beta2", "epsilon", "weight_decay", "l1", "l2")
