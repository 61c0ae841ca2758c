; JavaScript tags: definitions and references (for chunking and the symbol map).

[
  (class
    name: (_) @name.definition.class)
  (class_declaration
    name: (_) @name.definition.class)
] @definition.class

(method_definition
  name: [
    (property_identifier)
    (private_property_identifier)
    (computed_property_name)
  ] @name.definition.method) @definition.method

[
  (function_declaration
    name: (identifier) @name.definition.function)
  (generator_function_declaration
    name: (identifier) @name.definition.function)
] @definition.function

(variable_declarator
  name: (identifier) @name.definition.function
  value: [
    (arrow_function)
    (function_expression)
    (generator_function)
  ]) @definition.function

(assignment_expression
  left: [
    (identifier) @name.definition.function
    (member_expression
      property: (property_identifier) @name.definition.function)
  ]
  right: [
    (arrow_function)
    (function_expression)
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

(import_statement
  source: (string
    (string_fragment) @name.reference.import)) @reference.import
