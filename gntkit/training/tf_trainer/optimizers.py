"""keras optimizers that make torch's update: Adam with torch's epsilon, SGD with torch's momentum buffer.

keras' Adam adds epsilon to sqrt(v) before the bias correction of v, torch's after it:
keras divides by sqrt(v_t) + eps, torch by sqrt(v_t / (1 - beta_2^t)) + eps. keras' epsilon
is thus eps / sqrt(1 - beta_2^t) in torch's terms: 32x larger on the first step (3.2e-7 for
1e-8), which changes the update of every weight whose gradient is below about 1e-5
(tests/test_step_parity.py). keras' SGD keeps -lr x velocity in its momentum buffer and
torch's keeps the velocity alone, so the two differ whenever the learning rate changes
between steps (every step under the cosine schedule). These two classes compute torch's
formulas; the state they keep has keras' names and shapes, so checkpoints keep loading.
"""

from __future__ import annotations

from gntkit.errors import require

tf = require("tensorflow", "tensorflow", "Training with TensorFlow")
keras = tf.keras
ops = keras.ops

__all__ = ["TorchAdam", "TorchSGD"]


@keras.utils.register_keras_serializable(package="gntkit")
class TorchAdam(keras.optimizers.Adam):
    """keras Adam computing torch.optim.Adam's step (epsilon added after the bias correction).

    m_t = b1 m + (1 - b1) g, v_t = b2 v + (1 - b2) g^2,
    w -= lr / (1 - b1^t) x m_t / (sqrt(v_t / (1 - b2^t)) + eps). Decoupled weight decay
    (keras' `weight_decay`) is applied before this step, as keras does for every optimizer.
    """

    def update_step(self, gradient, variable, learning_rate):
        """Apply one Adam step to `variable` (no amsgrad)."""
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = ops.cast(self.beta_1, dtype), ops.cast(self.beta_2, dtype)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - beta_2))
        denominator = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(1 - ops.power(beta_2, step))),
                              ops.cast(self.epsilon, dtype))
        step_size = ops.divide(lr, 1 - ops.power(beta_1, step))
        self.assign_sub(variable, ops.multiply(step_size, ops.divide(m, denominator)))


@keras.utils.register_keras_serializable(package="gntkit")
class TorchSGD(keras.optimizers.SGD):
    """keras SGD computing torch.optim.SGD's step: buffer = momentum x buffer + g; w -= lr x buffer.

    The learning rate multiplies the buffer when it is applied, not when a gradient enters
    it, so a schedule changes the step as in torch. Without momentum it is plain SGD.
    """

    def update_step(self, gradient, variable, learning_rate):
        """Apply one SGD step to `variable` (no Nesterov)."""
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        if self.momentum == 0:
            self.assign_sub(variable, ops.multiply(gradient, lr))
            return
        buffer = self.momentums[self._get_variable_index(variable)]
        self.assign(buffer, ops.add(ops.multiply(buffer, ops.cast(self.momentum, dtype)), gradient))
        self.assign_sub(variable, ops.multiply(buffer, lr))
