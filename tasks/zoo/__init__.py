"""Model zoo: datasets, architectures, training interventions and weight perturbations.

Importing the package (which importing any of its modules does first) registers the vision track
(:mod:`tasks.zoo.vision`), the language domain (:mod:`tasks.zoo.language`) and the graph domain
(:mod:`tasks.zoo.graph`) and MNIST-1D (:mod:`tasks.zoo.mnist1d`) next to the built-in datasets and architectures, so ``datasets.DATASETS``,
``architectures.ARCHITECTURES``, ``interventions.DOMAIN_INTERVENTIONS``, ``datasets.load`` and
``architectures.build`` always know them.
"""

from tasks.zoo import vision  # noqa: F401  (registers mnist, fashion_mnist, cifar10/100 and the vision architectures)
from tasks.zoo import graph, language  # noqa: F401,E402  (register sbm + gcn/sage/gat, dyck + transformer)
from tasks.zoo import mnist1d  # noqa: F401,E402  (registers the generated MNIST-1D signals of sweep=vision_deep)
