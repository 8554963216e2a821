// ParseTokenSequences: serialized tf.train.SequenceExample records → one int64 per record for
// each context key, (values, row_splits) for each feature list key, one int64 per step, and
// (values, row_splits, value_splits) for each value key: feature lists whose steps hold any
// number of int64s (the `chars` list: a token's character ids).
//
// This is the record layout of the pipeline (contract.py; README, "The data contract"): a
// context of single int64 features, feature lists of one int64 Feature per time step, and
// optionally feature lists of one Int64List Feature of any length per time step.
// tf.io.parse_sequence_example parses it too, but it handles every SequenceExample, which
// costs several times the CPU of a loop over the wire format that does only this
// (BENCHMARKS.md, "Trainer input"). It reads the wire format as the protobuf library does:
// fields in any order, unknown fields (and groups) skipped, packed or unpacked numbers, the
// last map entry of a key wins, repeated message fields merge, a later member of Feature's
// `kind` oneof replaces an earlier one. A record protobuf would refuse is refused: an
// InvalidArgument error that names the record, never a guess.
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;

// An InvalidArgument status whose message is the arguments, concatenated.
template <typename... Args>
absl::Status InvalidArgument(const Args&... args) {
  return absl::InvalidArgumentError(absl::StrCat(args...));
}

struct Span {
  const uint8_t* begin = nullptr;
  const uint8_t* end = nullptr;
};

inline bool ReadVarint(const uint8_t*& p, const uint8_t* end, uint64_t* value) {
  if (p < end && !(*p & 0x80)) {  // the common case: one byte
    *value = *p++;
    return true;
  }
  uint64_t result = 0;
  for (int shift = 0; shift < 64 && p < end; shift += 7) {
    const uint8_t byte = *p++;
    result |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if (!(byte & 0x80)) {
      *value = result;
      return true;
    }
  }
  return false;
}

inline bool ReadSpan(const uint8_t*& p, const uint8_t* end, Span* span) {
  uint64_t length;
  if (!ReadVarint(p, end, &length) || length > static_cast<uint64_t>(end - p)) return false;
  span->begin = p;
  span->end = p + length;
  p += length;
  return true;
}

// Reads a field's tag: 32 bits at most, and field number 0 is invalid, as in protobuf.
inline bool ReadTag(const uint8_t*& p, const uint8_t* end, uint64_t* tag) {
  return ReadVarint(p, end, tag) && (*tag >> 3) != 0 && *tag <= 0xFFFFFFFFu;
}

bool SkipField(const uint8_t*& p, const uint8_t* end, uint64_t tag, int depth = 0);

// Skips the fields of a group up to its end tag (wire types 3 and 4: obsolete, but valid).
inline bool SkipGroup(const uint8_t*& p, const uint8_t* end, uint64_t start_tag, int depth) {
  if (depth >= 100) return false;  // protobuf's recursion limit
  while (p < end) {
    uint64_t tag;
    if (!ReadTag(p, end, &tag)) return false;
    if ((tag & 7) == 4) return (tag >> 3) == (start_tag >> 3);
    if (!SkipField(p, end, tag, depth + 1)) return false;
  }
  return false;
}

// Skips the value of a field whose tag has been read.
bool SkipField(const uint8_t*& p, const uint8_t* end, uint64_t tag, int depth) {
  uint64_t ignored;
  Span span;
  switch (tag & 7) {
    case 0: return ReadVarint(p, end, &ignored);
    case 1: if (end - p < 8) return false; p += 8; return true;
    case 2: return ReadSpan(p, end, &span);
    case 3: return SkipGroup(p, end, tag, depth);
    case 5: if (end - p < 4) return false; p += 4; return true;
    default: return false;  // an end-group tag outside a group, or wire type 6 or 7
  }
}

// Whether bytes are valid UTF-8, as protobuf requires of proto3 strings (the map keys).
inline bool IsUtf8(Span text) {
  const uint8_t* p = text.begin;
  while (p < text.end) {
    const uint8_t byte = *p++;
    if (byte < 0x80) continue;
    int more;
    uint32_t code, least;
    if ((byte & 0xE0) == 0xC0) { more = 1; code = byte & 0x1F; least = 0x80; }
    else if ((byte & 0xF0) == 0xE0) { more = 2; code = byte & 0x0F; least = 0x800; }
    else if ((byte & 0xF8) == 0xF0) { more = 3; code = byte & 0x07; least = 0x10000; }
    else return false;
    if (text.end - p < more) return false;
    for (int i = 0; i < more; ++i, ++p) {
      if ((*p & 0xC0) != 0x80) return false;
      code = code << 6 | (*p & 0x3F);
    }
    if (code < least || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return false;
  }
  return true;
}

// Whether a BytesList (kind 1), FloatList (2) or Int64List (3) is well-formed.
inline bool IsValidList(Span list, uint64_t kind) {
  const uint8_t* p = list.begin;
  while (p < list.end) {
    uint64_t tag, value;
    Span packed;
    if (!ReadTag(p, list.end, &tag)) return false;
    if (kind != 1 && tag == ((1 << 3) | 2)) {  // packed floats or int64s
      if (!ReadSpan(p, list.end, &packed)) return false;
      if (kind == 2 && (packed.end - packed.begin) % 4 != 0) return false;
      for (const uint8_t* q = packed.begin; kind == 3 && q < packed.end;) {
        if (!ReadVarint(q, packed.end, &value)) return false;
      }
    } else if (!SkipField(p, list.end, tag)) {  // bytes, unpacked numbers, unknown fields
      return false;
    }
  }
  return true;
}

// Whether a Feature is well-formed, whatever its kind.
inline bool IsValidFeature(Span feature) {
  const uint8_t* p = feature.begin;
  while (p < feature.end) {
    uint64_t tag;
    Span list;
    if (!ReadTag(p, feature.end, &tag)) return false;
    const uint64_t field = tag >> 3;
    if (field >= 1 && field <= 3 && (tag & 7) == 2) {
      if (!ReadSpan(p, feature.end, &list) || !IsValidList(list, field)) return false;
    } else if (!SkipField(p, feature.end, tag)) {
      return false;
    }
  }
  return true;
}

// Whether a FeatureList (field 1: repeated Feature) is well-formed.
inline bool IsValidFeatureList(Span feature_list) {
  const uint8_t* p = feature_list.begin;
  while (p < feature_list.end) {
    uint64_t tag;
    Span feature;
    if (!ReadTag(p, feature_list.end, &tag)) return false;
    if (tag == ((1 << 3) | 2)) {
      if (!ReadSpan(p, feature_list.end, &feature) || !IsValidFeature(feature)) return false;
    } else if (!SkipField(p, feature_list.end, tag)) {
      return false;
    }
  }
  return true;
}

// Appends the values of a Feature that must be an int64_list to `out` and sets `*count` to
// how many. Returns false if it is not well-formed; sets `*wrong_kind` if it holds a
// bytes_list or float_list. A message given in several spans is their concatenation, as
// protobuf merges repeated occurrences of a message field.
inline bool ParseInt64Feature(const Span* spans, size_t num_spans, std::vector<int64_t>* out, int64_t* count,
                              bool* wrong_kind) {
  const size_t start = out->size();
  *wrong_kind = false;
  for (size_t s = 0; s < num_spans; ++s) {
    const uint8_t* p = spans[s].begin;
    const uint8_t* end = spans[s].end;
    while (p < end) {
      uint64_t tag;
      Span list;
      if (!ReadTag(p, end, &tag)) return false;
      const uint64_t field = tag >> 3;
      if (field == 1 || field == 2) {
        if ((tag & 7) != 2) {
          if (!SkipField(p, end, tag)) return false;
          continue;
        }
        // Another member of the `kind` oneof replaces the values read so far.
        if (!ReadSpan(p, end, &list) || !IsValidList(list, field)) return false;
        out->resize(start);
        *wrong_kind = true;
        continue;
      }
      if (tag != ((3 << 3) | 2)) {
        if (!SkipField(p, end, tag)) return false;
        continue;
      }
      if (!ReadSpan(p, end, &list)) return false;
      if (*wrong_kind) out->resize(start);
      *wrong_kind = false;
      const uint8_t* q = list.begin;
      while (q < list.end) {  // Int64List: field 1, packed or not
        uint64_t list_tag, value;
        if (!ReadTag(q, list.end, &list_tag)) return false;
        if (list_tag == ((1 << 3) | 2)) {
          Span packed;
          if (!ReadSpan(q, list.end, &packed)) return false;
          for (const uint8_t* r = packed.begin; r < packed.end;) {
            if (!ReadVarint(r, packed.end, &value)) return false;
            out->push_back(static_cast<int64_t>(value));
          }
        } else if (list_tag == ((1 << 3) | 0)) {
          if (!ReadVarint(q, list.end, &value)) return false;
          out->push_back(static_cast<int64_t>(value));
        } else if (!SkipField(q, list.end, list_tag)) {
          return false;
        }
      }
    }
  }
  *count = static_cast<int64_t>(out->size() - start);
  return true;
}

// The value of a map entry: the spans of its value field, in order (usually one).
using Value = std::vector<Span>;

// Reads the entries of a map<string, Feature or FeatureList> (field 1 of Features and
// FeatureLists) and keeps, for each key of `keys`, the value of the last entry with that
// key. Every other value, and any value a later entry replaces, is checked with `is_valid`,
// so a damaged record is refused wherever the damage is, as protobuf refuses it.
inline bool FindEntries(Span message, const std::vector<std::string>& keys, bool (*is_valid)(Span),
                        std::vector<Value>* values, std::vector<bool>* found, Value* scratch) {
  const uint8_t* p = message.begin;
  while (p < message.end) {
    uint64_t tag;
    Span entry;
    if (!ReadTag(p, message.end, &tag)) return false;
    if (tag != ((1 << 3) | 2)) {
      if (!SkipField(p, message.end, tag)) return false;
      continue;
    }
    if (!ReadSpan(p, message.end, &entry)) return false;
    Span key;  // absent: the empty string
    Value& value = *scratch;
    value.clear();
    const uint8_t* q = entry.begin;
    while (q < entry.end) {
      uint64_t entry_tag;
      Span field;
      if (!ReadTag(q, entry.end, &entry_tag)) return false;
      if (entry_tag == ((1 << 3) | 2)) {  // the last key wins; each must be UTF-8 (proto3 string)
        if (!ReadSpan(q, entry.end, &key) || !IsUtf8(key)) return false;
      } else if (entry_tag == ((2 << 3) | 2)) {  // repeated value fields merge
        if (!ReadSpan(q, entry.end, &field)) return false;
        value.push_back(field);
      } else if (!SkipField(q, entry.end, entry_tag)) {
        return false;
      }
    }
    size_t index = keys.size();
    for (size_t i = 0; i < keys.size(); ++i) {
      if (keys[i].size() == static_cast<size_t>(key.end - key.begin) &&
          std::equal(key.begin, key.end, keys[i].begin())) {
        index = i;
      }
    }
    const Value& unused = index < keys.size() ? (*values)[index] : value;
    if (index == keys.size() || (*found)[index]) {
      for (const Span& span : unused) {
        if (!is_valid(span)) return false;
      }
    }
    if (index < keys.size()) {
      (*values)[index].swap(value);
      (*found)[index] = true;
    }
  }
  return true;
}

class ParseTokenSequencesOp : public OpKernel {
 public:
  explicit ParseTokenSequencesOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("context_keys", &context_keys_));
    OP_REQUIRES_OK(context, context->GetAttr("sequence_keys", &sequence_keys_));
    OP_REQUIRES_OK(context, context->GetAttr("value_keys", &value_keys_));
    int64_t num_context, num_sequence, num_value;
    OP_REQUIRES_OK(context, context->GetAttr("num_context", &num_context));
    OP_REQUIRES_OK(context, context->GetAttr("num_sequence", &num_sequence));
    OP_REQUIRES_OK(context, context->GetAttr("num_value", &num_value));
    OP_REQUIRES(context, num_context == static_cast<int64_t>(context_keys_.size()) &&
                             num_sequence == static_cast<int64_t>(sequence_keys_.size()) &&
                             num_value == static_cast<int64_t>(value_keys_.size()),
                InvalidArgument("num_context, num_sequence and num_value must be the numbers of keys"));
    // Both kinds of feature list are looked up in one pass over the map: value keys follow.
    list_keys_ = sequence_keys_;
    list_keys_.insert(list_keys_.end(), value_keys_.begin(), value_keys_.end());
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& serialized = context->input(0);
    OP_REQUIRES(context, serialized.dims() == 1,
                InvalidArgument("serialized must be a vector, got shape ", serialized.shape().DebugString()));
    const auto records = serialized.flat<tensorflow::tstring>();
    const int64_t n = records.size();
    const size_t num_context = context_keys_.size(), num_sequence = sequence_keys_.size();
    const size_t num_value = value_keys_.size(), num_lists = num_sequence + num_value;
    // Outputs: context, then values and row_splits of the sequence keys, then values,
    // row_splits and value_splits of the value keys.
    const int first_value_output = static_cast<int>(num_context + 2 * num_sequence);

    std::vector<Tensor*> context_out(num_context);
    for (size_t i = 0; i < num_context; ++i) {
      OP_REQUIRES_OK(context, context->allocate_output(i, TensorShape({n}), &context_out[i]));
    }
    std::vector<Tensor*> splits_out(num_sequence);
    std::vector<std::vector<int64_t>> values(num_sequence);
    int64_t total_bytes = 0;
    for (int64_t r = 0; r < n; ++r) total_bytes += records(r).size();
    for (size_t j = 0; j < num_sequence; ++j) {
      OP_REQUIRES_OK(context, context->allocate_output(num_context + num_sequence + j, TensorShape({n + 1}),
                                                       &splits_out[j]));
      splits_out[j]->flat<int64_t>()(0) = 0;
      values[j].reserve(total_bytes / 8 / (num_sequence ? num_sequence : 1) + 16);
    }

    std::vector<Tensor*> value_row_splits_out(num_value);
    std::vector<std::vector<int64_t>> value_values(num_value), value_splits(num_value);
    for (size_t k = 0; k < num_value; ++k) {
      OP_REQUIRES_OK(context, context->allocate_output(first_value_output + num_value + k, TensorShape({n + 1}),
                                                       &value_row_splits_out[k]));
      value_row_splits_out[k]->flat<int64_t>()(0) = 0;
      value_values[k].reserve(total_bytes / 2 + 16);
      value_splits[k].reserve(total_bytes / 8 + 16);
      value_splits[k].push_back(0);
    }

    std::vector<Value> context_values(num_context), sequence_values(num_lists);
    std::vector<bool> context_found(num_context), sequence_found(num_lists);
    Value scratch;
    std::vector<int64_t> scalar;
    for (int64_t r = 0; r < n; ++r) {
      const tensorflow::tstring& record = records(r);
      const uint8_t* p = reinterpret_cast<const uint8_t*>(record.data());
      const uint8_t* end = p + record.size();
      std::fill(context_found.begin(), context_found.end(), false);
      std::fill(sequence_found.begin(), sequence_found.end(), false);
      for (Value& value : context_values) value.clear();
      for (Value& value : sequence_values) value.clear();
      bool ok = true;
      while (ok && p < end) {
        uint64_t tag;
        Span message;
        if (!ReadTag(p, end, &tag)) {
          ok = false;
        } else if (tag == ((1 << 3) | 2)) {  // context: Features (given twice, the maps merge)
          ok = ReadSpan(p, end, &message) &&
               FindEntries(message, context_keys_, IsValidFeature, &context_values, &context_found, &scratch);
        } else if (tag == ((2 << 3) | 2)) {  // feature_lists: FeatureLists
          ok = ReadSpan(p, end, &message) &&
               FindEntries(message, list_keys_, IsValidFeatureList, &sequence_values, &sequence_found, &scratch);
        } else {
          ok = SkipField(p, end, tag);
        }
      }
      OP_REQUIRES(context, ok, InvalidArgument("record ", r, " is not a well-formed SequenceExample"));

      for (size_t i = 0; i < num_context; ++i) {
        OP_REQUIRES(context, context_found[i],
                    InvalidArgument("record ", r, " has no context feature '", context_keys_[i], "'"));
        int64_t count = 0;
        bool wrong_kind = false;
        scalar.clear();
        const Value& value = context_values[i];
        OP_REQUIRES(context, ParseInt64Feature(value.data(), value.size(), &scalar, &count, &wrong_kind),
                    InvalidArgument("record ", r, " is not a well-formed SequenceExample (context feature '",
                                            context_keys_[i], "')"));
        OP_REQUIRES(context, !wrong_kind && count == 1,
                    InvalidArgument("record ", r, ": context feature '", context_keys_[i],
                                            "' must hold one int64 value"));
        context_out[i]->flat<int64_t>()(r) = scalar[0];
      }

      for (size_t j = 0; j < num_sequence; ++j) {
        std::vector<int64_t>& out = values[j];
        int64_t step = 0;
        for (const Span& list : sequence_values[j]) {  // empty if the record lacks the feature list
          const uint8_t* q = list.begin;
          while (q < list.end) {  // FeatureList: field 1, one Feature per step
            uint64_t tag;
            Span feature;
            OP_REQUIRES(context, ReadTag(q, list.end, &tag),
                        InvalidArgument("record ", r, " is not a well-formed SequenceExample"));
            if (tag != ((1 << 3) | 2)) {
              OP_REQUIRES(context, SkipField(q, list.end, tag),
                          InvalidArgument("record ", r, " is not a well-formed SequenceExample"));
              continue;
            }
            int64_t count = 0;
            bool wrong_kind = false;
            OP_REQUIRES(context, ReadSpan(q, list.end, &feature) &&
                                     ParseInt64Feature(&feature, 1, &out, &count, &wrong_kind),
                        InvalidArgument("record ", r, " is not a well-formed SequenceExample (feature list '",
                                                sequence_keys_[j], "')"));
            OP_REQUIRES(context, !wrong_kind && count == 1,
                        InvalidArgument("record ", r, ": step ", step, " of feature list '",
                                                sequence_keys_[j], "' must hold one int64 value"));
            ++step;
          }
        }
        splits_out[j]->flat<int64_t>()(r + 1) = static_cast<int64_t>(out.size());
      }

      for (size_t k = 0; k < num_value; ++k) {
        std::vector<int64_t>& out = value_values[k];
        std::vector<int64_t>& steps = value_splits[k];
        int64_t step = 0;
        for (const Span& list : sequence_values[num_sequence + k]) {
          const uint8_t* q = list.begin;
          while (q < list.end) {  // FeatureList: field 1, one Feature per step, any number of values each
            uint64_t tag;
            Span feature;
            OP_REQUIRES(context, ReadTag(q, list.end, &tag),
                        InvalidArgument("record ", r, " is not a well-formed SequenceExample"));
            if (tag != ((1 << 3) | 2)) {
              OP_REQUIRES(context, SkipField(q, list.end, tag),
                          InvalidArgument("record ", r, " is not a well-formed SequenceExample"));
              continue;
            }
            int64_t count = 0;
            bool wrong_kind = false;
            OP_REQUIRES(context, ReadSpan(q, list.end, &feature) &&
                                     ParseInt64Feature(&feature, 1, &out, &count, &wrong_kind),
                        InvalidArgument("record ", r, " is not a well-formed SequenceExample (feature list '",
                                                value_keys_[k], "')"));
            OP_REQUIRES(context, !wrong_kind,
                        InvalidArgument("record ", r, ": step ", step, " of feature list '", value_keys_[k],
                                                "' must hold int64 values"));
            steps.push_back(static_cast<int64_t>(out.size()));
            ++step;
          }
        }
        value_row_splits_out[k]->flat<int64_t>()(r + 1) = value_row_splits_out[k]->flat<int64_t>()(r) + step;
      }
    }

    for (size_t j = 0; j < num_sequence; ++j) {
      Tensor* out;
      OP_REQUIRES_OK(context, context->allocate_output(num_context + j, TensorShape({static_cast<int64_t>(values[j].size())}),
                                                       &out));
      std::copy(values[j].begin(), values[j].end(), out->flat<int64_t>().data());
    }
    for (size_t k = 0; k < num_value; ++k) {
      Tensor* out;
      OP_REQUIRES_OK(context, context->allocate_output(first_value_output + k,
                                                       TensorShape({static_cast<int64_t>(value_values[k].size())}), &out));
      std::copy(value_values[k].begin(), value_values[k].end(), out->flat<int64_t>().data());
      OP_REQUIRES_OK(context, context->allocate_output(first_value_output + 2 * num_value + k,
                                                       TensorShape({static_cast<int64_t>(value_splits[k].size())}), &out));
      std::copy(value_splits[k].begin(), value_splits[k].end(), out->flat<int64_t>().data());
    }
  }

 private:
  std::vector<std::string> context_keys_;
  std::vector<std::string> sequence_keys_;
  std::vector<std::string> value_keys_;
  std::vector<std::string> list_keys_;  // sequence_keys_, then value_keys_
};

}  // namespace

REGISTER_OP("ParseTokenSequences")
    .Input("serialized: string")
    .Attr("context_keys: list(string) >= 0")
    .Attr("sequence_keys: list(string) >= 0")
    .Attr("value_keys: list(string) >= 0")
    .Attr("num_context: int >= 0")
    .Attr("num_sequence: int >= 0")
    .Attr("num_value: int >= 0")
    .Output("context: num_context * int64")
    .Output("values: num_sequence * int64")
    .Output("row_splits: num_sequence * int64")
    .Output("value_values: num_value * int64")
    .Output("value_row_splits: num_value * int64")
    .Output("value_splits: num_value * int64")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      tensorflow::shape_inference::ShapeHandle serialized;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 1, &serialized));
      int64_t num_context, num_sequence, num_value;
      TF_RETURN_IF_ERROR(c->GetAttr("num_context", &num_context));
      TF_RETURN_IF_ERROR(c->GetAttr("num_sequence", &num_sequence));
      TF_RETURN_IF_ERROR(c->GetAttr("num_value", &num_value));
      tensorflow::shape_inference::DimensionHandle n = c->Dim(serialized, 0), n_plus_one;
      TF_RETURN_IF_ERROR(c->Add(n, 1, &n_plus_one));
      int output = 0;
      for (int64_t i = 0; i < num_context; ++i) c->set_output(output++, c->Vector(n));
      for (int64_t j = 0; j < num_sequence; ++j) c->set_output(output++, c->Vector(c->UnknownDim()));
      for (int64_t j = 0; j < num_sequence; ++j) c->set_output(output++, c->Vector(n_plus_one));
      for (int64_t k = 0; k < num_value; ++k) c->set_output(output++, c->Vector(c->UnknownDim()));
      for (int64_t k = 0; k < num_value; ++k) c->set_output(output++, c->Vector(n_plus_one));
      for (int64_t k = 0; k < num_value; ++k) c->set_output(output++, c->Vector(c->UnknownDim()));
      return absl::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("ParseTokenSequences").Device(tensorflow::DEVICE_CPU), ParseTokenSequencesOp);
