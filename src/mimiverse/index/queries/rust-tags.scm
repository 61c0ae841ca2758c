; Rust tags: definitions and references (for chunking and the symbol map).
; An impl block is a @definition.impl named by its type: the chunker keeps its methods in it.

(struct_item
  name: (type_identifier) @name.definition.struct) @definition.struct

(enum_item
  name: (type_identifier) @name.definition.enum) @definition.enum

(union_item
  name: (type_identifier) @name.definition.union) @definition.union

(trait_item
  name: (type_identifier) @name.definition.trait) @definition.trait

(mod_item
  name: (identifier) @name.definition.module
  body: (declaration_list)) @definition.module

(type_item
  name: (type_identifier) @name.definition.type) @definition.type

(function_item
  name: (identifier) @name.definition.function) @definition.function

(function_signature_item
  name: (identifier) @name.definition.function) @definition.function

(macro_definition
  name: (identifier) @name.definition.macro) @definition.macro

(impl_item
  type: [
    (type_identifier) @name.definition.impl
    (generic_type
      type: (type_identifier) @name.definition.impl)
    (scoped_type_identifier
      name: (type_identifier) @name.definition.impl)
  ]) @definition.impl

(impl_item
  trait: [
    (type_identifier) @name.reference.trait
    (scoped_type_identifier
      name: (type_identifier) @name.reference.trait)
    (generic_type
      type: (type_identifier) @name.reference.trait)
  ]) @reference.trait

(call_expression
  function: [
    (identifier) @name.reference.call
    (field_expression
      field: (field_identifier) @name.reference.call)
    (scoped_identifier
      name: (identifier) @name.reference.call)
  ]) @reference.call

(macro_invocation
  macro: (identifier) @name.reference.macro) @reference.macro

(use_declaration
  argument: (_) @name.reference.import) @reference.import
