// One epoch of the main case's training step, issued from C++: the kernels
// sknn_large's hand-derived step calls (ParamStack.hand_step, one member,
// ReLU, softmax log-loss along rows, L2 (alpha over the batch's rows, as
// scikit-learn scales it) through the fused Adam kernel's weight decay),
// with no Python between them. bench_bound.py times it against the
// matrix-product floor, to split a fit's distance from the floor into what
// the kernels cost and what issuing them from Python costs.
//
// `parts` switches pieces of the step on, so that each one's cost can be
// read off cumulatively: 1 gathers the batch, 2 runs the activations and
// their derivatives, 4 the loss and its delta, 8 the bias gradients, 16 the
// penalty and the optimizer update. With none, only the products run (the
// floor's products in the step's dataflow).
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <vector>

using at::Tensor;

void epoch(const Tensor& X, const Tensor& y, const Tensor& perm, int64_t batch,
           const std::vector<Tensor>& W, const std::vector<Tensor>& b,
           std::vector<Tensor> gW, std::vector<Tensor> gb,
           const std::vector<Tensor>& adam_w, const std::vector<Tensor>& adam_b,
           const Tensor& step, double lr, double alpha, int64_t parts,
           const std::vector<int64_t>& narrow,
           const std::vector<int64_t>& grad_narrow) {
  const bool gather = parts & 1, act = parts & 2, loss = parts & 4,
             bias = parts & 8, update = parts & 16;
  const int64_t n_layers = static_cast<int64_t>(W.size());
  const auto opts = X.options();
  // A narrow layer's output is held (fo, batch) and its weight gradient
  // computed (fo, fi) then copied back, as sknn_large's step does.
  std::vector<Tensor> outs, dhs, grads_t;
  for (int64_t i = 0; i < n_layers; ++i) {
    const int64_t fi = W[i].size(0), fo = W[i].size(1);
    outs.push_back(narrow[i] ? at::zeros({fo, batch}, opts)
                             : at::zeros({batch, fo}, opts));
    grads_t.push_back(grad_narrow[i] ? at::zeros({fo, fi}, opts) : Tensor());
    if (i + 1 < n_layers) dhs.push_back(at::zeros({batch, fo}, opts));
  }
  Tensor xb = at::zeros({batch, X.size(1)}, opts);
  Tensor yb = at::zeros({batch}, y.options());
  Tensor ones = at::ones({1, batch}, opts);
  Tensor delta = at::zeros({batch, W.back().size(1)}, opts);
  for (int64_t start = 0; start < perm.size(0); start += batch) {
    // The last batch may be short: views of the first rows of each buffer.
    const int64_t rows = std::min(batch, perm.size(0) - start);
    auto cut = [rows](const Tensor& t, int64_t dim = 0) {
      return t.narrow(dim, 0, rows);
    };
    Tensor x_rows = cut(xb), y_rows = cut(yb), ones_rows = ones.narrow(1, 0, rows);
    if (gather) {
      const Tensor idx = perm.narrow(0, start, rows);
      at::index_select_out(x_rows, X, 0, idx);
      at::index_select_out(y_rows, y, 0, idx);
    }
    std::vector<Tensor> acts;
    Tensor h = x_rows;
    for (int64_t i = 0; i < n_layers; ++i) {
      if (narrow[i]) {
        Tensor out_t = cut(outs[i], 1);
        at::addmm_out(out_t, b[i].unsqueeze(1), W[i].t(), h.t());
        acts.push_back(out_t.t());
      } else {
        acts.push_back(cut(outs[i]));
        at::addmm_out(acts[i], b[i], h, W[i]);
      }
      if (act && i + 1 < n_layers) acts[i].relu_();
      h = acts[i];
    }
    Tensor d = cut(delta);
    if (loss) {
      // Along rows, as the hand-derived step does for 2-15 classes on a CPU.
      const Tensor idx = y_rows.unsqueeze(0);
      Tensor log_p = at::log_softmax(acts.back().t(), 0);
      Tensor value = log_p.gather(0, idx).neg_();
      d = log_p.exp_().scatter_(0, idx, -1.0, "add").t();
      d.mul_(1.0 / static_cast<double>(rows));
    }
    for (int64_t i = n_layers - 1; i >= 0; --i) {
      const Tensor& input = i ? acts[i - 1] : x_rows;
      if (grad_narrow[i]) {
        at::mm_out(grads_t[i], d.t(), input);
        gW[i].copy_(grads_t[i].t());
      } else {
        at::mm_out(gW[i], input.t(), d);
      }
      if (bias) at::mm_out(gb[i], ones_rows, d);
      if (i == 0) break;
      Tensor dh = cut(dhs[i - 1]);
      at::mm_out(dh, d, W[i].t());
      if (act) at::threshold_backward_out(dh, dh, acts[i - 1], 0);
      d = dh;
    }
    if (update) {
      // The L2 penalty's value, which the fit reports with its loss.
      Tensor penalty = at::dot(adam_w[0], adam_w[0]);
      step.add_(1.0);
      const double t = step.item<double>();
      const double eps = 1e-8 / std::sqrt(1.0 - std::pow(0.999, t));
      at::_fused_adam_({adam_w[0]}, {adam_w[1]}, {adam_w[2]}, {adam_w[3]}, {},
                       {step}, lr, 0.9, 0.999, alpha / rows, eps, false, false);
      at::_fused_adam_({adam_b[0]}, {adam_b[1]}, {adam_b[2]}, {adam_b[3]}, {},
                       {step}, lr, 0.9, 0.999, 0.0, eps, false, false);
    }
  }
}
