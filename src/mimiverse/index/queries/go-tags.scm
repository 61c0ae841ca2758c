; Go tags: definitions and references (for chunking and the symbol map).
; @receiver names a method's receiver type, so the chunker can call it Type.Method.

(function_declaration
  name: (identifier) @name.definition.function) @definition.function

(method_declaration
  receiver: (parameter_list
    (parameter_declaration
      type: [
        (type_identifier) @receiver
        (pointer_type
          (type_identifier) @receiver)
        (generic_type
          type: (type_identifier) @receiver)
        (pointer_type
          (generic_type
            type: (type_identifier) @receiver))
      ]))
  name: (field_identifier) @name.definition.method) @definition.method

(method_declaration
  name: (field_identifier) @name.definition.method) @definition.method

(type_declaration
  (type_spec
    name: (type_identifier) @name.definition.struct
    type: (struct_type))) @definition.struct

(type_declaration
  (type_spec
    name: (type_identifier) @name.definition.interface
    type: (interface_type))) @definition.interface

(type_declaration
  (type_spec
    name: (type_identifier) @name.definition.type
    type: [
      (type_identifier)
      (qualified_type)
      (generic_type)
      (pointer_type)
      (slice_type)
      (array_type)
      (map_type)
      (function_type)
      (channel_type)
    ])) @definition.type

(call_expression
  function: [
    (identifier) @name.reference.call
    (selector_expression
      field: (field_identifier) @name.reference.call)
  ]) @reference.call

[
  (type_identifier) @name.reference.type
  (qualified_type
    name: (type_identifier) @name.reference.type)
] @reference.type

(import_spec
  path: (interpreted_string_literal) @name.reference.import) @reference.import
