; TypeScript (and TSX) tags: definitions and references (for chunking and the symbol map).

[
  (class
    name: (_) @name.definition.class)
  (class_declaration
    name: (_) @name.definition.class)
  (abstract_class_declaration
    name: (_) @name.definition.class)
] @definition.class

(interface_declaration
  name: (_) @name.definition.interface) @definition.interface

(type_alias_declaration
  name: (_) @name.definition.type) @definition.type

(enum_declaration
  name: (_) @name.definition.enum) @definition.enum

(internal_module
  name: (_) @name.definition.namespace) @definition.namespace

(method_definition
  name: [
    (property_identifier)
    (private_property_identifier)
    (computed_property_name)
  ] @name.definition.method) @definition.method

(abstract_method_signature
  name: (_) @name.definition.method) @definition.method

[
  (function_declaration
    name: (identifier) @name.definition.function)
  (generator_function_declaration
    name: (identifier) @name.definition.function)
  (function_signature
    name: (identifier) @name.definition.function)
] @definition.function

(variable_declarator
  name: (identifier) @name.definition.function
  value: [
    (arrow_function)
    (function_expression)
    (generator_function)
  ]) @definition.function

(call_expression
  function: [
    (identifier) @name.reference.call
    (member_expression
      property: (property_identifier) @name.reference.call)
  ]) @reference.call

(new_expression
  constructor: [
    (identifier) @name.reference.class
    (member_expression
      property: (property_identifier) @name.reference.class)
  ]) @reference.class

(type_annotation
  [
    (type_identifier) @name.reference.type
    (generic_type
      name: (type_identifier) @name.reference.type)
  ]) @reference.type

[
  (extends_clause
    value: (identifier) @name.reference.class)
  (implements_clause
    (type_identifier) @name.reference.implementation)
] @reference.implementation

(import_statement
  source: (string
    (string_fragment) @name.reference.import)) @reference.import
